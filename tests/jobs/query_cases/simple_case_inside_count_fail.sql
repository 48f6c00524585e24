-- fail: aggregate_argument, column: pums.educ
SELECT race, COUNT(CASE educ WHEN 16 THEN 1 END) AS doctors FROM pums GROUP BY race
