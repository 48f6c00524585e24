-- fail: join_condition
SELECT t.industry, AVG(p.income) AS mean_income
FROM pums AS p JOIN tax AS t ON TRUE
GROUP BY t.industry
