-- fail: join_type
SELECT t.industry, AVG(p.income) AS mean_income
FROM pums AS p, tax AS t
WHERE p.pid = t.pid
GROUP BY t.industry
