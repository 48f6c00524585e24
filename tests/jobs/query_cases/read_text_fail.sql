-- fail: function_not_allowed
SELECT race, COUNT(*) AS n FROM pums WHERE read_text('/etc/passwd') IS NOT NULL GROUP BY race
