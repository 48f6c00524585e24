-- fail: function_not_allowed
SELECT COUNT(*) AS n FROM pums WHERE 100 % (age - 40) = 0
