-- ok
SELECT COUNT(DISTINCT p.pid) AS persons FROM pums AS p JOIN tax AS t ON p.pid = t.pid
