-- fail: row_level_output, column: pums.age
SELECT race, COUNT(*) AS n FROM pums GROUP BY race HAVING age > 30
