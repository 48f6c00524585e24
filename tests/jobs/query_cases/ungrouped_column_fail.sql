-- fail: row_level_output, column: pums.age
SELECT race, age, COUNT(*) AS n FROM pums GROUP BY race
