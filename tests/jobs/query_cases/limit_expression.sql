-- ok
SELECT race, COUNT(*) AS n FROM pums GROUP BY race LIMIT 2
