-- fail: window_function
SELECT race, COUNT(*) AS n FROM pums GROUP BY race QUALIFY n > 1
