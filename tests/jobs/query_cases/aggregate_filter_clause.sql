-- ok
SELECT race, SUM(income) AS male_income FROM pums WHERE sex = 1 GROUP BY race
