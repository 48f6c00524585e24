-- fail: ambiguous_column
SELECT COUNT(DISTINCT pid) AS persons FROM pums AS p JOIN tax AS t ON p.pid = t.pid
