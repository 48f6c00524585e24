-- ok
SELECT t.industry, AVG(p.income) AS mean_income
FROM pums AS p INNER JOIN tax AS t ON t.pid = p.pid
GROUP BY t.industry
