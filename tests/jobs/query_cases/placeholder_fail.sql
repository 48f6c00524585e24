-- fail: function_not_allowed
SELECT race, COUNT(*) AS n FROM pums WHERE race = ? GROUP BY race
