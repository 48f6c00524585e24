-- ok
SELECT educ, AVG(income) AS mean_income FROM pums GROUP BY educ
