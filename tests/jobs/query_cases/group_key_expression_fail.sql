-- fail: group_key, column: pums.age
SELECT age + 1 AS next_age, COUNT(*) AS n FROM pums GROUP BY age
