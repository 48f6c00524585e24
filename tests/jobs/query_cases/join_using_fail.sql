-- fail: join_type
SELECT t.industry, AVG(p.income) AS mean_income
FROM pums AS p JOIN tax AS t USING (pid)
GROUP BY t.industry
