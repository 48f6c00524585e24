-- ok
SELECT race, COUNT(*) AS n, SUM(income) AS total FROM pums GROUP BY race
