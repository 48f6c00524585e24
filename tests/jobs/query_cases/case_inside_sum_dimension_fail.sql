-- fail: dimension_as_measure, column: pums.age
SELECT race, SUM(CASE WHEN sex = 1 THEN age ELSE 0 END) AS male_age FROM pums GROUP BY race
