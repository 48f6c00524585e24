-- fail: join_condition
SELECT t.industry, AVG(p.income) AS mean_income
FROM pums AS p JOIN tax AS t ON p.pid = p.pid
GROUP BY t.industry
