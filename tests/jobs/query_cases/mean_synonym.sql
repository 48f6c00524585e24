-- ok
SELECT race, MEAN(income) AS mean_income FROM pums GROUP BY race
