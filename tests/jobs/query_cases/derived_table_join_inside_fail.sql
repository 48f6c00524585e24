-- fail: subquery
SELECT s.industry, COUNT(*) AS n FROM (SELECT t.industry FROM pums AS p JOIN tax AS t ON p.pid = t.pid) AS s GROUP BY s.industry
