-- fail: dimension_as_measure, column: pums.age
SELECT race, AVG(age) AS ages FROM pums GROUP BY race
