-- fail: join_condition
SELECT t.industry, AVG(p.income) AS mean_income
FROM pums AS p JOIN tax AS t ON p.pid = t.pid AND p.sex = 1
GROUP BY t.industry
