-- fail: ambiguous_column
SELECT COUNT(*) AS n FROM pums AS p JOIN tax AS p ON p.pid = p.pid
