-- fail: table_not_granted
SELECT COUNT(*) AS n FROM read_csv('/etc/passwd')
