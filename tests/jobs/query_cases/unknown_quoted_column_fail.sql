-- fail: unknown_column
SELECT "Salary", COUNT(*) AS n FROM pums GROUP BY "Salary"
