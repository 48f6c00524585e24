-- fail: unknown_column
SELECT race, SUM(salary) AS total FROM pums GROUP BY race
