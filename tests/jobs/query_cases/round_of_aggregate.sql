-- ok
SELECT race, AVG(income) AS mean_income FROM pums GROUP BY race
