-- fail: dimension_as_measure, column: pums.age
SELECT race, MAX(age) AS oldest FROM pums GROUP BY race
