-- ok
SELECT race, COUNT(*) AS n FROM pums GROUP BY race HAVING SUM(income) > 0
