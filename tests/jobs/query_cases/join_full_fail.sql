-- fail: join_type
SELECT t.industry, AVG(p.income) AS mean_income
FROM pums AS p FULL OUTER JOIN tax AS t ON p.pid = t.pid
GROUP BY t.industry
