-- fail: function_not_allowed
SELECT industry, COUNT(*) AS n FROM tax WHERE industry LIKE 'C%' GROUP BY industry
