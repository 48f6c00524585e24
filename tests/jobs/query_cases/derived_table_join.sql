-- ok
SELECT t.industry, COUNT(*) AS n
FROM (SELECT pid, race FROM pums WHERE age >= 18) AS s JOIN tax AS t ON s.pid = t.pid
GROUP BY t.industry
