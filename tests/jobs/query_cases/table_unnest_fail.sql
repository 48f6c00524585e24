-- fail: table_not_granted
SELECT COUNT(*) AS n FROM unnest([1, 2, 3])
