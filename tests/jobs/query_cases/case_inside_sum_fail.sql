-- fail: aggregate_argument, column: pums.income
SELECT race, SUM(CASE WHEN sex = 1 THEN income ELSE 0 END) AS male_income FROM pums GROUP BY race
