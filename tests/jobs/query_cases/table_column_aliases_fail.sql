-- fail: table_not_granted
SELECT COUNT(*) AS n FROM pums AS p(a, b)
