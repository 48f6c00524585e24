-- fail: function_not_allowed
SELECT COUNT(*) FILTER (WHERE race = 5 AND income > 1000) AS n FROM pums
