-- fail: function_not_allowed
SELECT race, COUNT(*) AS n FROM pums WHERE race IN (sex, educ) GROUP BY race
