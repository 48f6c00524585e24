-- fail: join_condition, column: pums.educ
SELECT t.industry, AVG(p.income) AS mean_income
FROM pums AS p JOIN tax AS t ON p.educ = t.pid
GROUP BY t.industry
