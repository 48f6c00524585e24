-- ok
SELECT race, SUM(income) AS total, COUNT(*) AS n FROM pums GROUP BY race
