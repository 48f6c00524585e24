-- fail: table_not_granted
SELECT COUNT(*) AS n FROM 'x.csv'
