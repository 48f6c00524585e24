-- fail: function_not_allowed
SELECT current_setting('threads') AS t, COUNT(*) AS n FROM pums
