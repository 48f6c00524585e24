-- fail: function_not_allowed
SELECT race, COUNT(*) AS n FROM pums WHERE random() < 0.5 GROUP BY race
