-- ok
SELECT race, SUM(income) AS total FROM pums GROUP BY race
