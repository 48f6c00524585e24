-- fail: single_select
SELECT race, COUNT(*) AS n FROM pums USING SAMPLE 10% GROUP BY race
