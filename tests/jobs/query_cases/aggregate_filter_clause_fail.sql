-- fail: function_not_allowed
SELECT race, SUM(income) FILTER (WHERE sex = 1) AS male_income FROM pums GROUP BY race
