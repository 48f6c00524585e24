-- fail: function_not_allowed
SELECT race, COUNT(*) AS n FROM pums WHERE getenv('HOME') IS NOT NULL GROUP BY race
