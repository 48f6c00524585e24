-- fail: join_type
SELECT t.industry, AVG(p.income) AS mean_income
FROM pums AS p CROSS JOIN tax AS t
GROUP BY t.industry
