-- fail: table_not_granted
SELECT COUNT(*) AS n FROM (VALUES (1), (2)) AS v(a)
