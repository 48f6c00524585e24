-- fail: table_not_granted
SELECT 1 + 1 AS two
