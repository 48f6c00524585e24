-- fail: single_select
COPY (SELECT race FROM pums) TO '/tmp/pums.csv'
