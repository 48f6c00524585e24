-- fail: window_function
SELECT race, COUNT(*) OVER (PARTITION BY race) AS n FROM pums
