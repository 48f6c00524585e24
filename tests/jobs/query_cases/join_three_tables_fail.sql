-- fail: join_condition
SELECT t.industry, COUNT(*) AS n
FROM pums AS p JOIN tax AS t ON p.pid = t.pid JOIN tax AS u ON p.pid = t.pid
GROUP BY t.industry
