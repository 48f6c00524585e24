-- ok
SELECT t.industry, AVG(p.income) AS mean_income
FROM pums AS p JOIN tax AS t ON p.pid = t.pid
GROUP BY t.industry
