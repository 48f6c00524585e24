-- fail: column_denied, column: tax.firm_id
SELECT t.industry, AVG(p.income) AS mean_income
FROM pums AS p JOIN tax AS t ON p.pid = t.firm_id
GROUP BY t.industry
