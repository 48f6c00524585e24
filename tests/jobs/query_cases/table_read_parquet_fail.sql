-- fail: table_not_granted
SELECT COUNT(*) AS n FROM read_parquet('/data/pums.parquet')
